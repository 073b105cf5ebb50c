"""Benchmarks the project ships (`python manage.py benchmark <name>`).

Each benchmark runs in a throwaway database created like Django's test runner
creates one, and reports every operation next to a floor measured in the same
run: the same SQL statements issued through the raw database driver, without
the Python around them. The ratio ours/floor is the number that matters; the
absolute rates depend on the machine.
"""
