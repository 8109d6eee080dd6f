file(REMOVE_RECURSE
  "libcowcore.a"
)
