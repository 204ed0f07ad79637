agent {
  ttl = "30 seconds"
}
