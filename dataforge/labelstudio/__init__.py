"""Label Studio round trip: push images and pre-annotations to a real server, pull annotations back."""
