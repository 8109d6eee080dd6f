# Writes OUT defining COWSCOPE_COMMIT as `git describe` of SRC; rewrites it
# only when the text changes, so unchanged commits cause no rebuild.
# A source tree without git (the Debian build's export) gets it from the
# environment: scripts/make-deb sets COWSCOPE_COMMIT.
if(DEFINED ENV{COWSCOPE_COMMIT} AND NOT "$ENV{COWSCOPE_COMMIT}" STREQUAL "")
  set(commit "$ENV{COWSCOPE_COMMIT}")
  set(rc 0)
else()
  execute_process(COMMAND git -C ${SRC} describe --always --dirty --abbrev=12
                  OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET RESULT_VARIABLE rc)
endif()
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit "unknown")
endif()
set(text "#define COWSCOPE_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
