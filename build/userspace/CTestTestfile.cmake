# CMake generated Testfile for 
# Source directory: /work/main/userspace
# Build directory: /work/main/build/userspace
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
subdirs("lib")
