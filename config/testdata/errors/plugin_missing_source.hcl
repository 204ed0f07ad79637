plugin "kafka" {
  config { topic = "orders" }
}
