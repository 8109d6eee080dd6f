file(REMOVE_RECURSE
  "CMakeFiles/cowcore.dir/src/error.cpp.o"
  "CMakeFiles/cowcore.dir/src/error.cpp.o.d"
  "CMakeFiles/cowcore.dir/src/fd.cpp.o"
  "CMakeFiles/cowcore.dir/src/fd.cpp.o.d"
  "CMakeFiles/cowcore.dir/src/meta.cpp.o"
  "CMakeFiles/cowcore.dir/src/meta.cpp.o.d"
  "CMakeFiles/cowcore.dir/src/proc.cpp.o"
  "CMakeFiles/cowcore.dir/src/proc.cpp.o.d"
  "CMakeFiles/cowcore.dir/src/units.cpp.o"
  "CMakeFiles/cowcore.dir/src/units.cpp.o.d"
  "libcowcore.a"
  "libcowcore.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/cowcore.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
