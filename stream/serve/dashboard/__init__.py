"""The browser dashboard: static HTML, JavaScript and CSS (package data) served by the live server."""
