fs {
  read_only = ["/etc/app/**"]
  moed      = "read"
}
