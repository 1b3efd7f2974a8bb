"""What every step leans on: atomic writes, bounded reads, the stop facility, third-party noise filters."""
