# CMake generated Testfile for 
# Source directory: /work/main/userspace/lib
# Build directory: /work/main/build/userspace/lib
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
