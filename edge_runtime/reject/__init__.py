"""The reject signal: a defect frame drives an output `delay` ms after its capture (the part's travel from the
camera to the ejector), from a worker process that keeps the time however slow inference is.

`spec` parses --reject; `outputs` are the GPIO line (libgpiod v2 and v1), the PLC gateway (HTTP) and the FAKE
chip; `worker` is the timing process; `scheduler` is the service's side of it. Every reject is recorded in
the store's `rejects` table with its scheduled and actual times (`edge_runtime.store`)."""
