-- API keys for server-to-server clients (the OpenAI-compatible and AI SDK endpoints),
-- and the conversations those clients name by their own ids. Idempotent.

-- Only a key's sha256 is kept: the key itself is shown once, when it is made.
create table if not exists public.api_keys (
    id uuid primary key default gen_random_uuid(),
    name text not null,
    key_hash text not null unique,
    application text,
    assistant_id text,
    created_at timestamptz not null default clock_timestamp(),
    last_used_at timestamptz
);
alter table public.api_keys enable row level security;

-- A client's own id for a chat (an AI SDK chat id, a UI's conversation id) -> ours.
create table if not exists public.conversation_aliases (
    user_id bigint not null references public.users (id) on delete cascade,
    alias text not null,
    conversation_id uuid not null references public.conversations (id) on delete cascade,
    primary key (user_id, alias)
);
alter table public.conversation_aliases enable row level security;

create or replace function public.jelly_api_key_json(k public.api_keys)
returns jsonb
language sql
immutable
set search_path = ''
as $$
    select jsonb_build_object('id', k.id, 'name', k.name, 'application', k.application,
                              'assistant_id', k.assistant_id, 'created', k.created_at,
                              'last_used', k.last_used_at)
$$;

create or replace function public.jelly_create_api_key(
    p_name text, p_key_hash text, p_application text default null,
    p_assistant_id text default null
)
returns jsonb
language sql
set search_path = ''
as $$
    insert into public.api_keys (name, key_hash, application, assistant_id)
    values (p_name, p_key_hash, p_application, p_assistant_id)
    returning public.jelly_api_key_json(api_keys)
$$;

-- Every key, newest first (never the hash).
create or replace function public.jelly_list_api_keys()
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(public.jelly_api_key_json(k) order by k.created_at desc, k.id),
                    '[]'::jsonb)
    from public.api_keys k
$$;

create or replace function public.jelly_delete_api_key(p_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    delete from public.api_keys where id = p_id;
    if not found then
        raise exception 'api key not found' using errcode = 'JL404';
    end if;
    return jsonb_build_object('deleted', p_id);
end;
$$;

-- The key with this hash (with the hash, for the caller's constant-time check), or
-- null. Marks it used at most once a minute, so a busy key is not a write per turn.
create or replace function public.jelly_api_key_by_hash(p_key_hash text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_key public.api_keys;
begin
    select * into v_key from public.api_keys where key_hash = p_key_hash;
    if v_key.id is null then
        return null;
    end if;
    if v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute' then
        update public.api_keys set last_used_at = now() where id = v_key.id
        returning * into v_key;
    end if;
    return public.jelly_api_key_json(v_key) || jsonb_build_object('key_hash', v_key.key_hash);
end;
$$;

-- The conversation a client's turn lands in, for the token's user (created when new):
--   p_alias given: the user's conversation with that id, else the one the alias names,
--     else a new one that the alias names from now on;
--   else p_history (earlier [{type: human|jelly, content}] of the chat, oldest first)
--     not empty: the recently updated conversation whose last messages are exactly
--     those (contents compared trimmed), else a new one;
--   else a new one.
create or replace function public.jelly_client_conversation(
    p_token text, p_greeting text, p_alias text default null,
    p_history jsonb default '[]'::jsonb
)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
    v_user record;
    v_id uuid;
    v_new uuid;
    v_count integer := coalesce(jsonb_array_length(p_history), 0);
begin
    select * into v_user from public.jelly_user(p_token, p_greeting);
    if p_alias is not null then
        if p_alias ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' then
            select c.id into v_id from public.conversations c
            where c.id = p_alias::uuid and c.user_id = v_user.user_id;
            if v_id is not null then
                return v_id;
            end if;
        end if;
        select a.conversation_id into v_id from public.conversation_aliases a
        where a.user_id = v_user.user_id and a.alias = p_alias;
        if v_id is not null then
            return v_id;
        end if;
    elsif v_count > 0 then
        select c.id into v_id
        from (select c.id, c.updated_at from public.conversations c
              where c.user_id = v_user.user_id
              order by c.updated_at desc, c.id desc limit 50) c
        where (select coalesce(jsonb_agg(jsonb_build_object('type', t.type, 'content', t.content)
                                         order by t.id), '[]'::jsonb)
               from (select m.id, m.type, btrim(m.content, E' \t\r\n') as content
                     from public.chat_messages m
                     where m.conversation_id = c.id and m.type in ('human', 'jelly')
                     order by m.id desc limit v_count) t)
              = (select jsonb_agg(jsonb_build_object('type', h->>'type',
                                                     'content', btrim(h->>'content', E' \t\r\n'))
                                  order by n)
                 from jsonb_array_elements(p_history) with ordinality as e(h, n))
        order by c.updated_at desc, c.id desc
        limit 1;
        if v_id is not null then
            return v_id;
        end if;
    end if;
    insert into public.conversations (user_id) values (v_user.user_id) returning id into v_new;
    if p_alias is not null then
        insert into public.conversation_aliases (user_id, alias, conversation_id)
        values (v_user.user_id, p_alias, v_new)
        on conflict (user_id, alias) do nothing;
        if not found then  -- a concurrent first turn of the same chat won
            delete from public.conversations where id = v_new;
            select a.conversation_id into v_new from public.conversation_aliases a
            where a.user_id = v_user.user_id and a.alias = p_alias;
        end if;
    end if;
    return v_new;
end;
$$;

select public.jelly_server_only(array[
        'public.jelly_api_key_json(public.api_keys)',
        'public.jelly_create_api_key(text, text, text, text)',
        'public.jelly_list_api_keys()',
        'public.jelly_delete_api_key(uuid)',
        'public.jelly_api_key_by_hash(text)',
        'public.jelly_client_conversation(text, text, text, jsonb)'
    ]);

notify pgrst, 'reload schema';
