agent {
  namespace = var.namespace
}
