target "deploymnet" "checkout" {
  namespace = "staging"
}
