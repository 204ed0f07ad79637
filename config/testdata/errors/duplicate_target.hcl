target "pod" "a" {}
target "pod" "b" {}
