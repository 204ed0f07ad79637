module goclient

go 1.24
