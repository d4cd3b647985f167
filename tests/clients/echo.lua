-- wrk script for tests/clients.rs: POST a small body to the echo function.
wrk.method = "POST"
wrk.body = "hello wrk"
wrk.headers["x-noslate-function"] = "echo"
wrk.headers["content-type"] = "application/octet-stream"
