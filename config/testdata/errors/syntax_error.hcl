fs {
  mode = "read"
