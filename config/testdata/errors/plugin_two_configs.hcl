plugin "kafka" {
  source = "./bin/kafka"
  config { topic = "orders" }
  config { topic = "payments" }
}
