file(REMOVE_RECURSE
  "../../generated/cowscope_commit.h"
  "CMakeFiles/cowscope_commit"
)

# Per-language clean rules from dependency scanning.
foreach(lang )
  include(CMakeFiles/cowscope_commit.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
