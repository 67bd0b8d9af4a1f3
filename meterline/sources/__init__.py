"""Sources: reads of other systems' records into the ledger (the inbound side; the sinks,
meterline.sinks, are the outbound one). Each source maps the other system's records to
the ledger's own input (the customers file's rows) and stores them through the same
checks a file goes through.

- salesforce: accounts and subscriptions from Salesforce (`meterline customers
  sync-salesforce`, docs/salesforce.md).
"""
