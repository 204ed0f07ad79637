steal "http" "mine" {
  port = 8080
  match { method = ["GET", "PSOT"] }
}
