fs {
  mode = "read"
}

fs {
  mode = "write"
}
