"""What people do around repos: discussions, likes and collections (pull requests are commits: ``..pull_requests``)."""
