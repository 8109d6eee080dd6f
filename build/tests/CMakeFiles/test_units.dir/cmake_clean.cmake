file(REMOVE_RECURSE
  "../bin/test_units"
  "../bin/test_units.pdb"
  "CMakeFiles/test_units.dir/unit/test_units.cpp.o"
  "CMakeFiles/test_units.dir/unit/test_units.cpp.o.d"
  "test_units[1]_tests.cmake"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/test_units.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
