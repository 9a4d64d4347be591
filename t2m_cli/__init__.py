"""t2m: Text2Model (T2M-HN) hypernetworks that turn class descriptions into classifiers."""

__version__ = "0.1.0"
