network {
  outgoing {
    fliter "remote" { ports = [5432] }
  }
}
