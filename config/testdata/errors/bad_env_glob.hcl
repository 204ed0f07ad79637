env {
  include = ["DATABASE_[URL"]
}
