# Empty custom commands generated dependencies file for cowscope_commit.
# This may be replaced when dependencies are built.
