steal "http" "mine" {
  port = 8080
  match {
    header "x-kwarp-user" { regex = "^(alice$" }
  }
}
