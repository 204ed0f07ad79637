steal "http" "mine" {
  port = 80800
}
