steal "http" "mine" { port = 8080 }
steal "http" "mine" { port = 9090 }
