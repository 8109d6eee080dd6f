# Empty dependencies file for cowcore.
# This may be replaced when dependencies are built.
