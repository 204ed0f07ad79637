agent {
  privileged = "very"
}
