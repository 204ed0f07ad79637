steal "http" "mine" {
  port = 8080
  match {
    path {
      prefix = "/api/"
      regex  = "^/api/"
    }
  }
}
