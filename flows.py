import eowatch.operators
