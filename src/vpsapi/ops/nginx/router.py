from fastapi import APIRouter

configs_router = APIRouter(prefix="/api/configs", tags=["ops: nginx sites"])
pools_router = APIRouter(prefix="/api/load-balancer", tags=["ops: load balancer"])
backends_router = APIRouter(prefix="/api/health", tags=["ops: load balancer"])
