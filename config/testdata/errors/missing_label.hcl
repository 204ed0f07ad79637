target "deployment" {
  namespace = "staging"
}
