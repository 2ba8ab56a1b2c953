"""Hospitals as data: site and consortium configuration, the five task definitions, encounter
tables, patient-level splits and the synthetic multi-site EHR generator.

Everything a site hands to the rest of the system is validated here, once, at the edge: a bad YAML
key or a bad table row fails with an error naming the file and the key (or row and column), so
`client/` and `server/` can trust what they receive.
"""
