fs {
  not_found = [".aws/**"]
}
