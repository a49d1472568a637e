"""agent/snmp."""
