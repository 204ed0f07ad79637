network {
  outgoing {
    filter "remote" {
      subnets = ["10.96.0.0/33"]
    }
  }
}
