target "deployment" "checkout" {   # kinds as in --target; omit the block for targetless
  namespace = "staging"
  container = "app"
}
agent {
  mode       = "job"               # job | ephemeral
  namespace  = "staging"           # where a Job agent runs (default: the target's)
  image      = "..."               # default: the release's image
  ttl        = "30s"               # lease after the last session
  privileged = false
  port       = 0                   # 0 = random; static for meshes that need an exclusion
}
env {
  include  = ["DATABASE_*", "REDIS_URL"]   # globs on names; default all
  exclude  = ["NODE_ENV"]
  override = { LOG_LEVEL = "debug" }
}
fs {
  mode       = "read"              # local | localwithoverrides | read | write
  read_only  = ["/etc/checkout/**"]  # globs; ** crosses /
  read_write = ["/data/**"]
  local      = ["/srv/cache/**"]
  not_found  = ["**/.aws/**"]
}
dns {
  enabled = true
  local   = ["*.corp.example.com"] # names resolved on this machine
}
network {
  outgoing {
    tcp = true
    udp = true
    filter "remote" {              # "remote": only these go via the pod; "local": these stay here
      hosts   = ["*.svc.cluster.local"]
      subnets = ["10.96.0.0/12"]
      ports   = [5432]
    }
  }
  incoming {
    mode         = "mirror"        # mirror | steal | off
    ignore_ports = [9090]
    port_mapping = { "8080" = 3000 }   # remote 8080 → local 3000
  }
}
steal "http" "mine" {              # a filtered steal; several may share a port
  port = 8080
  match {
    any_of {
      header "x-kwarp-user" { regex = "^alice$" }
      path { prefix = "/api/v2/" }
    }
    method = ["GET", "POST"]
  }
}
process { skip = ["dlv"] }         # children that run without the layer
plugin "kafka-split" {             # third party; config body uses the plugin's own schema
  source = "./bin/kwarp-plugin-kafka"
  sha256 = "..."
  config { topic = "orders" }
}
