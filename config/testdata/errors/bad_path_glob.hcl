fs {
  read_only = ["/etc/checkout/**", "/srv/a**b"]
}
