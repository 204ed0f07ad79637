plugin "kafka" { source = "./a" }
plugin "kafka" { source = "./b" }
