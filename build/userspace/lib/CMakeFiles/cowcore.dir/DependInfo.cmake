
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/userspace/lib/src/error.cpp" "userspace/lib/CMakeFiles/cowcore.dir/src/error.cpp.o" "gcc" "userspace/lib/CMakeFiles/cowcore.dir/src/error.cpp.o.d"
  "/work/main/userspace/lib/src/fd.cpp" "userspace/lib/CMakeFiles/cowcore.dir/src/fd.cpp.o" "gcc" "userspace/lib/CMakeFiles/cowcore.dir/src/fd.cpp.o.d"
  "/work/main/userspace/lib/src/meta.cpp" "userspace/lib/CMakeFiles/cowcore.dir/src/meta.cpp.o" "gcc" "userspace/lib/CMakeFiles/cowcore.dir/src/meta.cpp.o.d"
  "/work/main/userspace/lib/src/proc.cpp" "userspace/lib/CMakeFiles/cowcore.dir/src/proc.cpp.o" "gcc" "userspace/lib/CMakeFiles/cowcore.dir/src/proc.cpp.o.d"
  "/work/main/userspace/lib/src/units.cpp" "userspace/lib/CMakeFiles/cowcore.dir/src/units.cpp.o" "gcc" "userspace/lib/CMakeFiles/cowcore.dir/src/units.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
