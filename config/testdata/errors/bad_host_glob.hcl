dns {
  local = ["*.corp.example.com:53"]
}
