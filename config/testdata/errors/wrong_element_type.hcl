network {
  incoming {
    ignore_ports = [9090, "metrics"]
  }
}
