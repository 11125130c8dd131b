"""The ground floor: settings, errors, secrets, money and time. Imports nothing else from Pulse."""
