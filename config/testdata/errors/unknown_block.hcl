# a typo in a feature block's name
netwrok {
  outgoing { tcp = true }
}
