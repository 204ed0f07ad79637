mode = "read"
