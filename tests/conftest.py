import os
import sys

# tests import the top-level modules (model, data, coconut, ...) from the repo root
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
