"""The request path, from the socket to the model and back."""
