network {
  incoming {
    port_mapping = { "http" = 3000 }
  }
}
