"""Public contracts: one module per service (its API schemas, the vocabulary they use and one
schema per event it publishes). The gateway and the services import this package and
`crm_common`, never each other's packages."""
