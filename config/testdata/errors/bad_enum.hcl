fs {
  mode = "raed"
}
